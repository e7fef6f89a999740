"""The Litestar server (see the server issue)."""

__all__: list[str] = []
