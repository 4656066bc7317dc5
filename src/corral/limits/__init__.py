"""Rate and token limits: the :class:`~corral.limits.rate.Limiter` protocol, its values
(:class:`~corral.limits.rate.Rate`, :class:`~corral.limits.rate.Decision`), and two
implementations: :mod:`~corral.limits.memory` (one process) and :mod:`~corral.limits.redis`
(every instance sharing one Redis).

The gateway's use of them (which limits apply to a request, reservations, answer headers) is
:mod:`corral.http.limit_stage`.
"""

from corral.limits.rate import Decision, Hit, Limiter, LimiterUnavailable, Rate

__all__ = ["Decision", "Hit", "Limiter", "LimiterUnavailable", "Rate"]
