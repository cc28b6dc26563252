# Minimal Superset configuration for `superset test-db` in the client suite:
# a throw-away metadata database under SUPERSET_HOME.
import os

SECRET_KEY = "featuredb-client-suite-not-a-secret"
SQLALCHEMY_DATABASE_URI = "sqlite:///" + os.path.join(os.environ["SUPERSET_HOME"], "superset.db")
