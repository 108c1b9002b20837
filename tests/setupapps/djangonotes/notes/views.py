from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .models import Note


@csrf_exempt
def notes(request):
    if request.method == "POST":
        note = Note.objects.create(text=request.POST["text"])
        return JsonResponse({"id": note.id}, status=201)
    return JsonResponse({"notes": [n.text for n in Note.objects.order_by("id")]})
