"""What a ``databricks`` or ``databricks://<profile>`` tracking URI stands for.

MLflow's rules: ``databricks://<profile>`` reads only that profile of the configuration file
(``DATABRICKS_CONFIG_FILE``, else ``~/.databrickscfg``); plain ``databricks`` takes
``DATABRICKS_CONFIG_PROFILE``'s profile if set, else ``DATABRICKS_HOST`` with
``DATABRICKS_TOKEN`` (or ``DATABRICKS_USERNAME``/``DATABRICKS_PASSWORD``), else the file's
``DEFAULT`` profile. In a Ray worker the driver's resolution comes first, handed over in
fastflow's driver context (Ray's own channel), so workers need no environment of their own.

fastflow's REST store speaks for a token or a username and password. Other kinds of
authentication (OAuth, the Databricks CLI's) and secret-scope URIs are left to MLflow's own
store, which resolves them with the Databricks SDK.
"""

from __future__ import annotations

import os
import urllib.parse

from fastflow import _fastflow, _integrations
from fastflow.exceptions import MlflowException

_FIELDS = ("host", "token", "username", "password", "insecure")
_OTHER_AUTH = ("client_id", "client_secret", "auth_type")


def is_workspace_uri(uri) -> bool:
    return str(uri).partition(":")[0].lower() == "databricks"


def _profile_of(uri):
    """``(profile, secret-scope key prefix)`` as MLflow reads them from the URI."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme != "databricks":
        return None, None
    if parsed.netloc == "":
        raise MlflowException(
            f"URI is formatted incorrectly: no netloc in URI '{uri}'."
            " This may be the case if there is only one slash in the URI."
        )
    profile, _, key_prefix = parsed.netloc.partition(":")
    return profile, key_prefix or None


def _config_file():
    return os.environ.get("DATABRICKS_CONFIG_FILE") or os.path.join(
        os.path.expanduser("~"), ".databrickscfg"
    )


def _from_profile(profile):
    from configparser import ConfigParser

    parser = ConfigParser()
    parser.read(_config_file())
    if profile == "DEFAULT":
        section = parser.defaults()
    else:
        # Only the profile's own keys: MLflow does not let DEFAULT's fill a named profile.
        section = parser._sections.get(profile, {})
    return {field: section.get(field) for field in _FIELDS + _OTHER_AUTH}


def _from_environment():
    # The environment's auth type is the SDK's business, not MLflow's legacy reader's.
    return {
        field: os.environ.get(f"DATABRICKS_{field.upper()}")
        for field in _FIELDS + _OTHER_AUTH
        if field != "auth_type"
    }


def _usable(config) -> bool:
    """A token, or a username and password: what fastflow's client sends itself."""
    if not config.get("host"):
        return False
    return bool(config.get("token")) or bool(config.get("username") and config.get("password"))


def _mlflows_only(config) -> bool:
    """Authentication MLflow accepts and only its SDK-backed store can carry out."""
    oauth = config.get("host") and config.get("client_id") and config.get("client_secret")
    return bool(oauth) or config.get("auth_type") in ("databricks-cli", "azure-cli")


def _malformed(uri):
    return MlflowException(
        f"Reading Databricks credential configuration failed with MLflow tracking URI '{uri}'. "
        "Please ensure that the 'databricks-sdk' PyPI library is installed, the tracking "
        "URI is set correctly, and Databricks authentication is properly configured. "
        "The tracking URI can be either 'databricks' "
        "(using profile name specified by 'DATABRICKS_CONFIG_PROFILE' environment variable "
        "or using 'DEFAULT' authentication profile if 'DATABRICKS_CONFIG_PROFILE' environment "
        "variable does not exist) or 'databricks://{profile}'. "
        "You can configure Databricks authentication in several ways, for example by "
        "specifying environment variables (e.g. DATABRICKS_HOST + DATABRICKS_TOKEN) or "
        "logging in using 'databricks auth login'. \n"
        "For details on configuring Databricks authentication, please refer to "
        "'https://docs.databricks.com/en/dev-tools/auth/index.html#unified-auth'."
    )


def resolve(uri):
    """The workspace's host and credentials for ``uri``; None when only MLflow's store
    can authenticate (OAuth, the CLI's login, secret scopes). Raises MLflow's error when
    nothing is configured."""
    driver = _integrations.ask(_integrations.WORKER_CONTEXT, False)
    handed = (driver or {}).get("workspaces", {}).get(uri)
    if handed:
        return handed
    profile, key_prefix = _profile_of(uri)
    profile = profile or os.environ.get("DATABRICKS_CONFIG_PROFILE")
    if profile and key_prefix:
        return None
    if profile:
        candidates = [_from_profile(profile)]
    else:
        candidates = [_from_environment(), _from_profile("DEFAULT")]
    for config in candidates:
        if _usable(config):
            return {field: config[field] for field in _FIELDS if config.get(field)}
        if _mlflows_only(config):
            return None
    raise _malformed(uri)


def _insecure(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def register(uri) -> bool:
    """Makes fastflow's REST client reach ``uri``'s workspace; False when it cannot speak
    for the configured authentication (MLflow's store then serves the URI)."""
    found = resolve(uri)
    if found is None:
        return False
    _fastflow._register_workspace(
        uri,
        found["host"],
        token=found.get("token"),
        username=found.get("username"),
        password=found.get("password"),
        insecure=_insecure(found.get("insecure")),
    )
    return True


def for_workers(uris):
    """What the driver hands its workers for the workspace URIs among ``uris``."""
    handed = {}
    for uri in uris:
        if uri and is_workspace_uri(uri):
            try:
                found = resolve(uri)
            except MlflowException:
                found = None
            if found:
                handed[uri] = found
    return handed
