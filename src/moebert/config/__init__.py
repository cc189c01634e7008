"""The workflow config, read once: one JSON schema (schema.yaml), validated with its defaults filled in, its
sweeps expanded, every method resolved by its student kind, into typed settings that the workflow, the CLI
and the cost model read (`load_settings`); the stages' options and the flags rendered from them
(`options`)."""

from moebert.config.options import flags, from_args
from moebert.config.settings import Method, Settings, TaskSettings, config_hash, load_settings
from moebert.config.validation import TEACHER, ConfigError, schema_default, validate

__all__ = [
    "TEACHER",
    "ConfigError",
    "Method",
    "Settings",
    "TaskSettings",
    "config_hash",
    "flags",
    "from_args",
    "load_settings",
    "schema_default",
    "validate",
]
