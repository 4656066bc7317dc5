"""Typed settings, validated once at start-up.

Sources, lowest to highest precedence::

    defaults < config file (TOML, or a seed-001 config.json) < .env < environment < CLI flags

Every raw value remembers where it came from, so a bad one is reported the way the user spelled it,
one line per problem::

    >>> load_settings(env={"CORRAL_PORT": "abc"}, dotenv_path=None)
    Traceback (most recent call last):
    corral.settings.SettingsError: CORRAL_PORT: must be an integer between 0 and 65535, got 'abc'
    >>> load_settings(env={"CORRAL_BACKENDS": "gpu1=10.0.0.5, 10.0.0.6:11500"}).backends[1].url
    'http://10.0.0.6:11500'

Environment names are ``CORRAL_`` + the field name in upper case; a field of a nested section is
``CORRAL_SECTION__FIELD``. The seed gateways' names are read through :mod:`corral.compat`.

The models are in :mod:`corral.settings.model`, the sources in :mod:`corral.settings.loading`.
"""

from corral.settings.loading import Origin, load_settings
from corral.settings.model import (
    DEFAULT_BACKEND_URL,
    DEFAULT_CORS_ORIGINS,
    ENV_PREFIX,
    NESTED_DELIMITER,
    AuthSettings,
    BackendSettings,
    ByteSize,
    KiB,
    LimitSettings,
    MiB,
    ScopeLimits,
    Section,
    Settings,
    SettingsError,
    UsageSettings,
    WebhookSettings,
    normalise_backend_url,
    parse_size,
)

__all__ = [
    "DEFAULT_BACKEND_URL",
    "DEFAULT_CORS_ORIGINS",
    "ENV_PREFIX",
    "NESTED_DELIMITER",
    "AuthSettings",
    "BackendSettings",
    "ByteSize",
    "KiB",
    "LimitSettings",
    "MiB",
    "Origin",
    "ScopeLimits",
    "Section",
    "Settings",
    "SettingsError",
    "UsageSettings",
    "WebhookSettings",
    "load_settings",
    "normalise_backend_url",
    "parse_size",
]
