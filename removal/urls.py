from django.urls import path

from removal import apis, removebg

urlpatterns = [
    path(
        "paid/image/remove/background", apis.RemoveBackgroundApi.as_view(), name="remove-background"
    ),
    path("api/get/<str:task_id>", apis.TaskStatusApi.as_view(), name="task-status"),
    path("api/models", apis.ModelListApi.as_view(), name="model-list"),
    path("output/<str:filename>", apis.DownloadOutputApi.as_view(), name="download-output"),
    path("v1.0/removebg", removebg.RemoveBgApi.as_view(), name="removebg"),
    path("v1.0/account", removebg.RemoveBgAccountApi.as_view(), name="removebg-account"),
    path("healthz", apis.healthz, name="healthz"),
    path("readyz", apis.readyz, name="readyz"),
]
