"""Airflow 3 plugin: the Recommendations view (model runs, similar videos, users, health) in the nav.

The FastAPI sub-app is mounted on the api-server at /recommendations; every route requires Airflow's
own authentication (GetUserDep), so the UI's token cookie works and anonymous requests get 401.
"""

from __future__ import annotations

from airflow.api_fastapi.core_api.security import get_user
from airflow.plugins_manager import AirflowPlugin

from rec_models.names import RECS_CONN_ID

URL_PREFIX = "/recommendations"


def _database_url() -> str:
    from airflow.sdk import BaseHook

    from rec_models.db.connect import from_airflow_connection

    return from_airflow_connection(BaseHook.get_connection(RECS_CONN_ID))


def _app():
    from rec_models.ui.app import create_app

    return create_app(_database_url, get_user, URL_PREFIX)


class RecommendationsPlugin(AirflowPlugin):
    name = "recommendations"
    fastapi_apps = [{"app": _app(), "url_prefix": URL_PREFIX, "name": "Recommendations"}]
    external_views = [{
        "name": "Recommendations",
        "href": f"{URL_PREFIX}/",
        "destination": "nav",
        "url_route": "recommendations",
    }]
