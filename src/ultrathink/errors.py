"""Exception tree, grouped by what the caller does about it.

::

    UltrathinkError                 base: catch this at the CLI boundary
    ├── ConfigError                 bad configuration or parameters; fix the input, cannot start
    │   └── ModelInputError         (models.ensemble) labels or inputs a model cannot take
    ├── DataError                   market data cannot be used
    │   ├── DataSourceError         missing/unreadable file, unknown dataset, bad data spec
    │   └── DataValidationError     data read but breaks a rule (names file, row and rule)
    ├── StrategyError               a strategy could not be loaded or raised while running
    ├── OrderError                  an order operation that is a bug in the caller
    │   └── InvalidTransition       order state machine forbids the transition
    ├── BrokerError                 the broker failed (retryable or not: see ``retryable``)
    └── PersistenceError            the store cannot be opened, migrated or written
        ├── AuditError              the audit chain is broken
        ├── ModelIntegrityError     (models.artifacts) a registry file's hash does not match:
        │                           refused before anything is unpickled
        └── ModelNotFoundError      (models.registry) unknown version or empty registry

Risk denials are *not* exceptions: they are ``OrderDenied`` events with a reason code.
Every message names the thing, the rule, the value and, where possible, the fix.
"""

from __future__ import annotations


class UltrathinkError(Exception):
    """Base class of every error ULTRATHINK raises on purpose."""


class ConfigError(UltrathinkError):
    """Configuration or parameters that cannot start a run."""


class DataError(UltrathinkError):
    """Market data that cannot be used."""


class DataSourceError(DataError):
    """A data source that cannot be read: missing file, unknown dataset, bad spec."""


class DataValidationError(DataError):
    """Data that was read but breaks a validation rule.

    Parameters
    ----------
    source : str
        File or dataset name.
    rule : str
        Stable rule identifier, e.g. ``"high_below_max_open_close"``.
    detail : str
        Human-readable explanation including the offending value.
    row : int or None
        1-based data row number in the source (header excluded), if known.
    """

    def __init__(self, source: str, rule: str, detail: str, row: int | None = None) -> None:
        self.source = source
        self.rule = rule
        self.detail = detail
        self.row = row
        where = f"{source}, row {row}" if row is not None else source
        super().__init__(f"{where}: {rule}: {detail}")


class StrategyError(UltrathinkError):
    """A strategy that cannot be loaded, configured or that raised while running."""


class OrderError(UltrathinkError):
    """An order operation that indicates a bug in the caller."""


class InvalidTransition(OrderError):
    """The order state machine does not allow the requested transition."""


class BrokerError(UltrathinkError):
    """The broker failed to process a request.

    Parameters
    ----------
    message : str
        What failed.
    retryable : bool
        True when the same request may succeed later (timeouts, throttling).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        self.retryable = retryable
        super().__init__(message)


class PersistenceError(UltrathinkError):
    """The store cannot be opened, migrated or written."""


class AuditError(PersistenceError):
    """The audit chain is broken or cannot be verified."""
