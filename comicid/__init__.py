"""comicid: who is who in comics."""

__version__ = "0.1.0"
