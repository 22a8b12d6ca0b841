"""Nightly batch video recommendations: data, models, training, evaluation, top-N and database I/O.

Importable and testable without Airflow; the DAG in ``dags/`` only wires the functions in
:mod:`rec_models.pipeline`.
"""

__version__ = "0.1.0"
