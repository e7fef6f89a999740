"""Orders: the first domain plugin."""

from fynlo_sync.domains.orders.plugin import ORDERS, ORDERS_COLLECTION, OrdersPlugin, order_total
from fynlo_sync.domains.orders.states import PRECEDENCE, STATES, TRANSITIONS, next_state

__all__ = [
    "ORDERS",
    "ORDERS_COLLECTION",
    "PRECEDENCE",
    "STATES",
    "TRANSITIONS",
    "OrdersPlugin",
    "next_state",
    "order_total",
]
