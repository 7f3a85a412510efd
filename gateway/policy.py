"""Who may call what: ONE table from operation to rule, applied to every field by ONE permission class.

Roles: `admin` may do everything; a `service` (a backend such as the storefront, token `sub` = its
name) may do what an admin may wherever its token holds the operation's scope (each rule names one;
rules without a scope are for admins alone); a `customer` (token `sub` = their user id) reads and
updates themselves and creates, pays, cancels, deletes, reads and watches their own orders; anonymous
callers read products only. A missing or invalid token is UNAUTHENTICATED; a valid one that does
not allow the operation is FORBIDDEN. Another user's order is FORBIDDEN (not NOT_FOUND): order ids
are sequential, so hiding them would protect nothing and would only make errors harder to read. An
order id that does not exist at all is NOT_FOUND for a customer, decided before anything runs, so
an order created by someone else a moment later can never pass the check. A command on an order
(pay, cancel, delete) checks its owner in its handler, on the order row it locks (`acting_customer`
says for whom it acts): one read, and the decision holds until the command commits.

`enforce()` attaches the permission to every field of the root types (a field without a rule is
refused: fail closed) and to the listed fields of other types. Resolvers only ask the policy whose
orders to list when the caller did not say (`owner_scope`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import strawberry
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.schema.name_converter import NameConverter

from command.domain.customer import Customer
from command.owners import order_owner
from command.validation import parse_id
from gateway.auth import Principal, Scope
from gateway.context import GatewayContext, Info
from shared.errors import Forbidden, NotFound, RateLimited, Unauthenticated

Args = dict[str, Any]
ROOT_TYPES = ("Query", "Mutation", "Subscription")


class Rule:
    """Decides for an authenticated principal; raises Forbidden (or NotFound) to refuse.

    `scope` is what a service principal needs for the operation; it then acts as an admin would.
    """

    public = False
    scope: Scope | None = None

    async def check(self, operation: str, principal: Principal, source: Any, args: Args, ctx: GatewayContext) -> None:
        raise NotImplementedError

    def acts_as_admin(self, operation: str, principal: Principal) -> bool:
        """True for an admin, and for a service holding the scope; a service without it is refused."""
        if principal.is_admin:
            return True
        if principal.is_service:
            if self.scope is not None and self.scope in principal.scopes:
                return True
            need = f"needs the {self.scope.value} scope" if self.scope else "is for administrators"
            raise Forbidden(f"{operation} {need}")
        return False


class Public(Rule):
    """Anyone, anonymous included."""

    public = True


@dataclass(frozen=True)
class Staff(Rule):
    """Administrators, and services holding `scope`; never customers."""

    scope: Scope | None = None

    async def check(self, operation: str, principal: Principal, source: Any, args: Args, ctx: GatewayContext) -> None:
        if not self.acts_as_admin(operation, principal):
            raise Forbidden(f"{operation} is for administrators")


@dataclass(frozen=True)
class OwnUser(Rule):
    """Customers only for their own user id; `target` finds it in the arguments (or the parent object).

    With `absent_is_own`, leaving the id out is allowed and means "mine" (see `owner_scope`).
    """

    target: Callable[[Any, Args], object | None]
    field: str
    scope: Scope | None = None
    absent_is_own: bool = False

    async def check(self, operation: str, principal: Principal, source: Any, args: Args, ctx: GatewayContext) -> None:
        if self.acts_as_admin(operation, principal):
            return
        target = self.target(source, args)
        if target is None and self.absent_is_own:
            return
        if target is None or parse_id(target, self.field) != principal.user_id:
            raise Forbidden(f"{operation}: only your own user", field=self.field)


@dataclass(frozen=True)
class OwnOrder(Rule):
    """Customers only for orders they own, by the write model (the owner of an order never changes)."""

    arg: str
    field: str
    scope: Scope | None = None

    async def check(self, operation: str, principal: Principal, source: Any, args: Args, ctx: GatewayContext) -> None:
        if self.acts_as_admin(operation, principal):
            return
        order_id = parse_id(args[self.arg], self.field)
        owner = await order_owner(ctx.write_db, order_id)
        if owner is None:
            raise NotFound(f"order {order_id} not found", field=self.field)
        if owner != principal.user_id:
            raise Forbidden(f"{operation}: order {order_id} belongs to another user", field=self.field)


@dataclass(frozen=True)
class OwnOrderCommand(Rule):
    """Customers only for orders they own, checked by the command's handler on the row it locks (see
    `acting_customer`); admins, and services holding `scope`, for any order."""

    scope: Scope | None = None

    async def check(self, operation: str, principal: Principal, source: Any, args: Args, ctx: GatewayContext) -> None:
        self.acts_as_admin(operation, principal)  # a service without the scope is refused here


def arg(name: str) -> Callable[[Any, Args], object | None]:
    return lambda source, args: args.get(name)


def input_field(name: str) -> Callable[[Any, Args], object | None]:
    return lambda source, args: getattr(args["input"], name)


def parent_id(source: Any, args: Args) -> object | None:
    return source.id


PUBLIC = Public()
USERS_READ, USERS_WRITE = Scope.USERS_READ, Scope.USERS_WRITE
ORDERS_READ, ORDERS_WRITE, ORDERS_FULFIL = Scope.ORDERS_READ, Scope.ORDERS_WRITE, Scope.ORDERS_FULFIL
PRODUCTS_WRITE = Scope.PRODUCTS_WRITE

RULES: dict[str, Rule] = {
    # Queries
    "Query.product": PUBLIC,
    "Query.products": PUBLIC,
    "Query.user": OwnUser(arg("id"), "id", USERS_READ),
    "Query.users": Staff(USERS_READ),
    "Query.order": OwnOrder("id", "id", ORDERS_READ),
    "Query.orders": OwnUser(arg("user_id"), "userId", ORDERS_READ, absent_is_own=True),
    "User.orders": OwnUser(parent_id, "id", ORDERS_READ),
    # Mutations (every one also takes a token from the caller's rate bucket)
    "Mutation.createUser": Staff(USERS_WRITE),
    "Mutation.updateUser": OwnUser(arg("id"), "id", USERS_WRITE),
    "Mutation.deleteUser": Staff(USERS_WRITE),
    "Mutation.createProduct": Staff(PRODUCTS_WRITE),
    "Mutation.updateProduct": Staff(PRODUCTS_WRITE),
    "Mutation.deleteProduct": Staff(PRODUCTS_WRITE),
    "Mutation.createOrder": OwnUser(input_field("user_id"), "userId", ORDERS_WRITE),
    "Mutation.updateOrder": Staff(ORDERS_FULFIL),
    "Mutation.payOrder": OwnOrderCommand(ORDERS_WRITE),
    "Mutation.cancelOrder": OwnOrderCommand(ORDERS_WRITE),
    "Mutation.deleteOrder": OwnOrderCommand(ORDERS_WRITE),
    # Subscriptions
    "Subscription.orderStatusChanged": OwnOrder("order_id", "orderId", ORDERS_READ),
    "Subscription.orderUpdates": OwnUser(arg("user_id"), "userId", ORDERS_READ, absent_is_own=True),
}


class Authorize(BasePermission):
    """The one permission: rate limit (mutations), authentication, then the operation's rule."""

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:  # type: ignore[override]
        ctx = info.context
        parent = info.path.typename  # the GraphQL type the field belongs to
        operation = f"{parent}.{info.field_name}"
        if parent == "Mutation":
            throttle(ctx)
        rule = RULES.get(operation)
        if rule is None:
            raise Forbidden(f"{operation} has no access rule")
        if ctx.auth_error is not None:  # a token was sent and is bad: never silently treated as anonymous
            raise ctx.auth_error
        if rule.public:
            return True
        principal = ctx.principal
        if principal is None:
            raise Unauthenticated(f"{info.field_name} needs a bearer token")
        if principal.expired():
            raise Unauthenticated("token expired")
        await rule.check(info.field_name, principal, source, kwargs, ctx)
        return True


def throttle(ctx: GatewayContext) -> None:
    if ctx.limiter is None:
        return
    wait = ctx.limiter.take(ctx.principal, ctx.client)
    if wait > 0:
        retry_after = math.ceil(wait * 1000) / 1000
        raise RateLimited(f"too many mutations; retry in {retry_after:g}s", retry_after=retry_after)


def enforce(*types: type) -> None:
    """Guard every field of the root types and the ruled fields of the others (idempotent)."""
    names = NameConverter()
    for cls in types:
        definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
        for field in definition.fields:
            key = f"{definition.name}.{names.get_graphql_name(field)}"
            if definition.name not in ROOT_TYPES and key not in RULES:
                continue
            if not any(isinstance(e, PermissionExtension) for e in field.extensions):
                field.extensions.append(PermissionExtension([Authorize()], use_directives=False))


def owner_scope(info: Info, user_id: strawberry.ID | None, field: str = "userId") -> int | None:
    """Whose orders: the user asked for, else the customer themselves; None (everyone) for admins and services
    (the rule has already let only those with the scope through)."""
    if user_id is not None:
        return parse_id(user_id, field)
    principal = info.context.principal
    if principal is None:
        raise Unauthenticated(f"{field} scope needs a bearer token")
    return principal.user_id


def acting_customer(info: Info) -> Customer | None:
    """For whom a command on an order acts: the calling customer, whose handler refuses another user's order
    (`OwnOrderCommand`); None for an admin or a service, which act on any order."""
    principal = info.context.principal
    user_id = None if principal is None else principal.user_id
    return None if user_id is None else Customer(user_id, info.field_name)
