import os

SETTINGS = {"db": os.environ["BROKEN_APP_DATABASE_URL"]}
