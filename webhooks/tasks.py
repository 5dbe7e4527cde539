"""Celery tasks: a delivery id in, the work handed to plain functions."""

from celery import shared_task


@shared_task(name="webhooks.tasks.deliver", acks_late=True)
def deliver(*, delivery_id: int) -> str | None:
    from webhooks.sending import deliver as send_one

    return send_one(delivery_id)


@shared_task(name="webhooks.tasks.resend_due")
def resend_due() -> int:
    from webhooks.deliveries import resend_due as resend

    return resend()
