"""Source data: synthetic world, seeding, validation, snapshot extract and the shared Dataset."""
