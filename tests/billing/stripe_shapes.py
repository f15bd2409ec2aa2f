"""Stripe's own object definitions, to hold the tests' events to them.

The events the billing tests deliver are built by localstripe, by
``tests/billing/stripe_server.py`` or by the tests themselves; nothing made
them look like Stripe's. stripe-python's resource classes are generated from
Stripe's OpenAPI spec: each field of an object is an annotated attribute
(``payment_status: Literal["no_payment_required", "paid", "unpaid"]``,
``payment_intent: Optional[ExpandableField["PaymentIntent"]]``, ...).
``shape_errors`` checks a JSON object against them, recursively: every
field it carries must be one Stripe defines on that object, with a value of
the type Stripe gives it, and the fields Stripe always sends (annotated
without ``Optional``) must be there.
"""

from __future__ import annotations

import sys
import typing
from typing import Any, ForwardRef, Literal, Union

import stripe
from stripe._list_object import ListObject
from stripe._stripe_object import StripeObject, UntypedStripeObject

# The objects the billing code reads, by their ``object`` name.
OBJECTS: dict[str, type[StripeObject]] = {
    "event": stripe.Event,
    "checkout.session": stripe.checkout.Session,
    "charge": stripe.Charge,
    "payment_intent": stripe.PaymentIntent,
    "refund": stripe.Refund,
}


# What billing/payments.py reads of each object (test_stripe_shapes.py keeps it true).
HANDLER_READS: dict[str, list[str]] = {
    "checkout.session": ["id", "payment_status", "metadata", "amount_total", "currency"]
    + ["payment_intent"],
    "charge": ["id", "payment_intent", "amount_refunded"],
}


def _resolve(annotation: Any, owner: type) -> Any:
    """A ForwardRef ("PaymentIntent", "Session.CustomerDetails") as the class it names."""
    if not isinstance(annotation, ForwardRef):
        return annotation
    name = annotation.__forward_arg__
    scopes = [vars(owner), vars(sys.modules[owner.__module__])]
    for scope in scopes:
        head, _, rest = name.partition(".")
        if head in scope:
            found = scope[head]
            for part in filter(None, rest.split(".")):
                found = getattr(found, part)
            return found
    found = getattr(stripe, name, None)
    return found if found is not None else Any


def fields_of(cls: type) -> dict[str, Any]:
    """Every annotated field of a Stripe object class (its bases' included)."""
    fields: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass in (object, dict, StripeObject) or not issubclass(klass, StripeObject):
            continue
        for name, annotation in vars(klass).get("__annotations__", {}).items():
            if typing.get_origin(annotation) is typing.ClassVar or name.startswith("_"):
                continue
            fields[name] = (annotation, klass)
    return fields


def _optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) is Union and type(None) in typing.get_args(annotation)


def shape_errors(value: Any, cls: type, path: str = "") -> list[str]:
    """What in ``value`` (a JSON object) disagrees with Stripe's class ``cls``."""
    if not isinstance(value, dict):
        return [f"{path or cls.__name__}: a {type(value).__name__}, not an object"]
    errors = []
    fields = fields_of(cls)
    for name, item in value.items():
        if name not in fields:
            errors.append(f"{path}{name}: not a field Stripe defines on {cls.__name__}")
            continue
        annotation, owner = fields[name]
        errors += _type_errors(item, annotation, owner, f"{path}{name}")
    for name, (annotation, _) in fields.items():
        if name not in value and not _optional(annotation):
            errors.append(f"{path}{name}: Stripe always sends it on {cls.__name__}, missing")
    return errors


def _type_errors(value: Any, annotation: Any, owner: type, path: str) -> list[str]:
    annotation = _resolve(annotation, owner)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or isinstance(annotation, typing.TypeVar):
        return []
    if origin is Union:
        if value is None:
            return [] if type(None) in args else [f"{path}: null, which Stripe never sends"]
        arms = [arm for arm in args if arm is not type(None)]
        if str in arms and any(typing.get_origin(arm) is Literal for arm in arms):
            # stripe-python adds ``str`` beside an enum so that an SDK older
            # than a new value does not break; Stripe's values are the Literal.
            arms.remove(str)
        attempts = [_type_errors(value, arm, owner, path) for arm in arms]
        if any(not errors for errors in attempts):
            return []
        # Report against the arm of the value's own kind (an expanded object
        # against its class, not "is not a string").
        fitting = [
            e for arm, e in zip(arms, attempts, strict=True) if _same_kind(value, arm, owner)
        ]
        return min(fitting or attempts, key=len)
    if origin is Literal:
        return [] if value in args else [f"{path}: {value!r}, Stripe sends one of {args}"]
    if annotation is bool:
        return [] if isinstance(value, bool) else [f"{path}: {value!r} is not a boolean"]
    if annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: {value!r} is not an integer"]
    if annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{path}: {value!r} is not a number"]
    if annotation is str:
        return [] if isinstance(value, str) else [f"{path}: {value!r} is not a string"]
    if origin in (dict, typing.Dict):  # noqa: UP006 (how stripe-python writes it)
        if not isinstance(value, dict):
            return [f"{path}: {value!r} is not an object"]
        inner = args[1] if args else Any
        return [e for k, v in value.items() for e in _type_errors(v, inner, owner, f"{path}.{k}")]
    if origin in (list, typing.List):  # noqa: UP006
        if not isinstance(value, list):
            return [f"{path}: {value!r} is not a list"]
        inner = args[0] if args else Any
        return [
            e for i, v in enumerate(value) for e in _type_errors(v, inner, owner, f"{path}[{i}]")
        ]
    if origin is ListObject or annotation is ListObject:
        if not isinstance(value, dict) or value.get("object") != "list":
            return [f"{path}: Stripe sends a list object here ({{'object': 'list', ...}})"]
        inner = _resolve(args[0], owner) if args else Any
        errors = []
        for index, item in enumerate(value.get("data", [])):
            if isinstance(inner, type) and issubclass(inner, StripeObject):
                errors += shape_errors(item, inner, f"{path}.data[{index}].")
        return errors
    if origin is UntypedStripeObject:  # e.g. metadata: string values by key
        if not isinstance(value, dict):
            return [f"{path}: {value!r} is not an object"]
        inner = args[0] if args else Any
        return [e for k, v in value.items() for e in _type_errors(v, inner, owner, f"{path}.{k}")]
    if isinstance(annotation, type) and issubclass(annotation, StripeObject):
        if not isinstance(value, dict):
            return [f"{path}: {value!r} is not an object"]
        if not fields_of(annotation):  # an untyped object (e.g. an event's data.object)
            return []
        return shape_errors(value, annotation, f"{path}.")
    return []


def _same_kind(value: Any, annotation: Any, owner: type) -> bool:
    """Whether ``annotation`` takes a JSON value of ``value``'s kind at all."""
    annotation = _resolve(annotation, owner)
    origin = typing.get_origin(annotation) or annotation
    if isinstance(value, dict):
        return isinstance(origin, type) and issubclass(origin, dict | StripeObject)
    if isinstance(value, list):
        return origin in (list, typing.List)  # noqa: UP006
    return not (isinstance(origin, type) and issubclass(origin, dict | list | StripeObject))


def event_errors(event: dict, *, reads: dict[str, list[str]]) -> list[str]:
    """The event envelope and its ``data.object`` against Stripe's classes,
    and whether each field the handler reads (``reads``, by object name, as
    dotted paths) is where Stripe puts it."""
    errors = shape_errors(event, stripe.Event, "event.")
    obj = event.get("data", {}).get("object", {})
    name = obj.get("object")
    if name not in OBJECTS:
        return [*errors, f"data.object: object {name!r} is not one this check knows"]
    errors += shape_errors(obj, OBJECTS[name], f"data.object({name}).")
    # The stripe library's own reading of the event, as the SDK would give it.
    constructed = stripe.Event.construct_from(event, "sk_test_shapes")
    if not isinstance(constructed.data.object, OBJECTS[name]):
        errors.append(f"data.object: stripe reads it as {type(constructed.data.object).__name__}")
    for dotted in ["type", "data.object"] + [f"data.object.{p}" for p in reads.get(name, [])]:
        here: Any = event
        for part in dotted.split("."):
            if not isinstance(here, dict) or part not in here:
                errors.append(f"{dotted}: the handler reads it, the event lacks it")
                break
            here = here[part]
    return errors


def paid_session() -> dict:
    """A paid Checkout Session with every field Stripe always sends."""
    return {
        "id": "cs_test_a1",
        "object": "checkout.session",
        "amount_total": 900,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "created": 1764700000,
        "currency": "eur",
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "expires_at": 1764786400,
        "livemode": False,
        "metadata": {"account_id": "1", "pack_id": "2", "credits": "500"},
        "mode": "payment",
        "payment_intent": "pi_test_a1",
        "payment_method_types": ["card"],
        "payment_status": "paid",
        "shipping_options": [],
    }
