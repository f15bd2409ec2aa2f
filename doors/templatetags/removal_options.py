"""``{{ job|options_summary }}``: the output options a job used, in a few words.

The job page, the dashboard and the upload page's script (through the
status JSON the page polls) all show the same sentence, written by each
option's row in the option table (``imaging.options.summarize``).
"""

from django import template

from imaging.options import summarize

register = template.Library()


@register.filter
def options_summary(job) -> str:
    return summarize(options=job.options, output_format=job.output_format)
