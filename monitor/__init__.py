"""newsmon: a news-monitoring daemon.

Stages, one module each: fetch → parse → extract → analyse → match → store →
alert. See docs/architecture.md.
"""

__version__ = "0.1.0"
