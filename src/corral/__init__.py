"""corral: one front door for a fleet of Ollama servers.

Routing, queueing, failover and a byte-for-byte streaming relay in front of many Ollama servers,
speaking Ollama's own API (and the OpenAI-compatible one) to its clients.
"""

__version__ = "0.1.0"
