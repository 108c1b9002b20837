import functions_framework


@functions_framework.cloud_event
def on_order(cloud_event):
    """Triggered by a CloudEvent: prints what it got, as the samples do."""
    print(f"order {cloud_event['id']} of type {cloud_event['type']}: {cloud_event.data}")
