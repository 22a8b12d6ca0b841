"""Airflow 3 plugin: the Recommendations view (model runs, similar videos, users, health) in the nav.

The FastAPI sub-app is mounted on the api-server at /recommendations; every route requires Airflow's
own authentication (GetUserDep), so the UI's token cookie works and anonymous requests get 401.

It reads through its own Connection, ``recs_db_ui`` (database role rec_ui: read-only, no browsing
histories but through rec.user_top_domains), and falls back to the pipeline's ``recs_db`` with a
warning on every page. Users' top domains are shown only to callers Airflow's auth manager allows:
with the SimpleAuthManager, the roles in ``[recommendations] history_roles`` (default: admin); with
another auth manager (FAB), the custom view permission "Recommendation Browsing Histories".
"""

from __future__ import annotations

from airflow.api_fastapi.core_api.security import get_user
from airflow.plugins_manager import AirflowPlugin

from rec_models.names import RECS_CONN_ID, UI_CONN_ID

URL_PREFIX = "/recommendations"
# The FAB auth manager's permission (resource) that lets a role see users' browsing histories.
HISTORY_RESOURCE = "Recommendation Browsing Histories"


def _database():
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    from rec_models.db.connect import from_airflow_connection
    from rec_models.ui.app import UIDatabase

    try:
        return UIDatabase(from_airflow_connection(BaseHook.get_connection(UI_CONN_ID)))
    except AirflowNotFoundException:
        warning = (f"The Airflow Connection {UI_CONN_ID} is not set: this view reads through the pipeline's "
                   f"{RECS_CONN_ID}, which can write the rec schema. Create {UI_CONN_ID} with a login in role rec_ui "
                   f"(README: The Airflow UI).")
        return UIDatabase(from_airflow_connection(BaseHook.get_connection(RECS_CONN_ID)), warning)


def may_see_histories(user) -> bool:
    """Whether Airflow's auth manager lets this user see users' browsing histories (personal data)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.configuration import conf

    manager = get_auth_manager()
    if isinstance(manager, SimpleAuthManager):
        allowed = {r.strip().upper() for r in conf.get("recommendations", "history_roles", fallback="admin").split(",")}
        return (user.role or "").upper() in allowed
    return manager.is_authorized_custom_view(method="GET", resource_name=HISTORY_RESOURCE, user=user)


def _app():
    from rec_models.ui.app import create_app

    return create_app(_database, get_user, may_see_histories, URL_PREFIX)


class RecommendationsPlugin(AirflowPlugin):
    name = "recommendations"
    fastapi_apps = [{"app": _app(), "url_prefix": URL_PREFIX, "name": "Recommendations"}]
    external_views = [{
        "name": "Recommendations",
        "href": f"{URL_PREFIX}/",
        "destination": "nav",
        "url_route": "recommendations",
    }]
