"""The form that creates a subscription on the webhooks page."""

from django import forms

from releases.models import Model
from webhooks import targets
from webhooks.events import EVENT_CHOICES
from webhooks.models import Subscription, url_validator


class SubscriptionForm(forms.ModelForm):
    url = forms.CharField(max_length=500, validators=[url_validator], label="URL")
    events = forms.MultipleChoiceField(choices=EVENT_CHOICES, widget=forms.CheckboxSelectMultiple)
    model = forms.ModelChoiceField(queryset=Model.objects.order_by("name"), required=False, to_field_name="name",
                                   empty_label="every model")
    secret = forms.CharField(required=False, min_length=16, max_length=200, strip=False,
                             help_text="left empty, one is generated and shown once")

    class Meta:
        model = Subscription
        fields = ["name", "url", "events", "model"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            targets.check_on_save(url)
        except targets.BlockedTarget as exc:
            raise forms.ValidationError(str(exc)) from None
        return url

    def save(self, commit: bool = True) -> Subscription:
        if self.cleaned_data.get("secret"):
            self.instance.secret = self.cleaned_data["secret"]
        return super().save(commit)
