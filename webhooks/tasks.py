"""django-q2 task entry points (run on the webhook cluster): fetch by id,
call a service, nothing more."""

from revid.run_worker import draining
from webhooks import services


def deliver_event(event_id: str) -> str:
    if draining():
        # This webhook worker is stopping: another one makes the attempt.
        services.enqueue_delivery(event_id=event_id)
        return "requeued"
    delivery = services.deliver(event_id=event_id)
    if delivery is None:
        return "not due"
    return "delivered" if delivery.succeeded else (delivery.error or "failed")


def enqueue_due_deliveries() -> int:
    return services.enqueue_due_deliveries()
