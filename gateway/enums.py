"""The GraphQL enums: the domain's own (same names, same values) and the read model's product ordering."""

from __future__ import annotations

from typing import TypeAlias

import strawberry

from projection.queries import ProductOrder
from shared.events import OrderStatus, PaymentMethod

strawberry.enum(OrderStatus)
strawberry.enum(PaymentMethod)
strawberry.enum(ProductOrder, name="ProductOrderBy")
ProductOrderBy: TypeAlias = ProductOrder

__all__ = ["OrderStatus", "PaymentMethod", "ProductOrderBy"]
