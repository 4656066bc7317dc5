"""Who may call corral: API keys (format, cache, checks), IP rules and the real client address.

The request flow uses one object, :class:`corral.auth.access.AccessControl`; the parts:

- :mod:`keyformat`: ``corral_`` + 256 random bits; the SHA-256 digest that is stored;
- :mod:`keyring`: every stored key in memory, refreshed when keys change anywhere;
- :mod:`notices`: "keys changed" between instances (Redis pub/sub), or nothing (polling);
- :mod:`authenticator`: a presented key -> :class:`~corral.auth.principal.Principal`, or 401;
- :mod:`credentials`: where a client puts its key, and removing it before forwarding;
- :mod:`ipfilter`, :mod:`client_address`: allow/deny rules, and X-Forwarded-For from trusted
  proxies only;
- :mod:`activity`: last use and counters per key, written in batches.
"""
