"""A minimal Django project whose app owns one grpc_pool.Pool per process.

From the repository root::

    BACKEND_TARGET=127.0.0.1:50051 DJANGO_SETTINGS_MODULE=examples.django_app.settings \
        python -m django runserver --noreload
"""
