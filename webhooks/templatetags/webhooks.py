"""Webhook sections included in pages other apps render (the dashboard and
the job page), so those views need not know about webhooks."""

from django import template

from webhooks import selectors, services

register = template.Library()


@register.inclusion_tag("webhooks/_settings.html", takes_context=True)
def webhook_settings_section(context, account) -> dict:
    return {
        "csrf_token": context.get("csrf_token"),
        "webhook_settings": services.settings_for(account=account),
    }


@register.inclusion_tag("webhooks/_deliveries.html", takes_context=True)
def webhook_deliveries_section(context, job) -> dict:
    return {
        "csrf_token": context.get("csrf_token"),
        "job": job,
        "deliveries": selectors.deliveries_for_job(job=job),
    }
