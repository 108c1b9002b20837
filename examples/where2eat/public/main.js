// where2eat front-end. Every URL is relative ("api/places", not "/api/places")
// so the page works both under /where2eat/ and on where2eat.localhost.

const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const response = await fetch(path, {
    headers: { "content-type": "application/json" },
    ...options,
  });
  const body = await response.json();
  if (!response.ok) {
    // Powertools errors look like {"statusCode": 400, "message": "..."}.
    throw new Error(body.message || `request failed (${response.status})`);
  }
  return body;
}

function price(level) {
  return "$".repeat(level);
}

async function loadPlaces() {
  const { places } = await api("api/places");
  $("places").replaceChildren(
    ...places.map((place) => {
      const item = document.createElement("li");
      item.textContent = `${place.name} · ${place.cuisine || "food"} · ${price(place.price)}`;
      return item;
    }),
  );
}

async function pick() {
  const result = $("result");
  try {
    const place = await api(`api/pick?budget=${$("budget").value}`);
    result.textContent = `${place.name} (${place.cuisine || "food"}, ${price(place.price)})`;
  } catch (error) {
    result.textContent = error.message;
  }
}

async function addPlace(event) {
  event.preventDefault();
  const form = event.target;
  const data = new FormData(form);
  $("error").textContent = "";
  try {
    await api("api/places", {
      method: "POST",
      body: JSON.stringify({
        name: data.get("name"),
        cuisine: data.get("cuisine"),
        price: Number(data.get("price")),
      }),
    });
    form.reset();
    await loadPlaces();
  } catch (error) {
    $("error").textContent = error.message;
  }
}

$("pick").addEventListener("click", pick);
$("add").addEventListener("submit", addPlace);
loadPlaces().catch((error) => {
  $("error").textContent = `could not load places: ${error.message}`;
});
