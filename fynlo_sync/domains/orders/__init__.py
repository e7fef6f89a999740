"""Orders: the first domain plugin."""

from fynlo_sync.domains.orders.plugin import (
    ORDER_TOTAL,
    ORDERS,
    ORDERS_COLLECTION,
    OrdersPlugin,
    order_total,
)
from fynlo_sync.domains.orders.states import PRECEDENCE, STATES, TABLE, TRANSITIONS, next_state

__all__ = [
    "ORDERS",
    "ORDERS_COLLECTION",
    "ORDER_TOTAL",
    "PRECEDENCE",
    "STATES",
    "TABLE",
    "TRANSITIONS",
    "OrdersPlugin",
    "next_state",
    "order_total",
]
