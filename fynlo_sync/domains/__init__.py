"""Domain plugins built on the sync core: orders now; payments and the time clock next."""

__all__: list[str] = []
