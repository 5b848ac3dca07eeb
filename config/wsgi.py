import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
# What is loaded now lives as long as the process: keep it out of the cyclic
# collector's full passes, which scanned it every time (~100,000 objects,
# 45-150 ms with every request thread of the process stopped, measured under
# the steady benchmark; 10-20 ms once frozen).
gc.freeze()
