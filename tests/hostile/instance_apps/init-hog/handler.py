"""Init (in the app zygote) takes 1 GiB and the CPU, against memoryMB: 64."""

hog = bytearray(1 << 30)
for i in range(0, len(hog), 4096):
    hog[i] = 1


def handler(event, context):
    return {"ok": True}
