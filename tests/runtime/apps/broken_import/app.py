from lib.settings import SETTINGS


def handler(event, context):
    return SETTINGS
