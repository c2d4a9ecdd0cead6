"""The auth handlers as ``langgraph.json`` names them, checked when the server loads them.

With auth on, a server that could not check a single token must not start: loading
this file (only the server does) refuses unusable settings in one line. The check is
not in ``agent.auth`` itself, which ``memagent web`` and scripts import too: there a
bad setting is their own one-line error, and importing must not end the process.
"""

from agent.auth import auth, check_auth_settings
from agent.settings import Settings, SettingsError
from agent.startup import refuse_to_start

__all__ = ("auth",)


def _refuse_unusable_settings() -> None:
    try:
        settings = Settings.from_env()
        if settings.auth_enabled:
            check_auth_settings(settings)
    except SettingsError as error:
        refuse_to_start(str(error))


_refuse_unusable_settings()
