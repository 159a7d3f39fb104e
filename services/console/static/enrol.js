// Enrolment page: check each photo or webcam shot as it is chosen or taken (the gateway's shot
// checks, shown beside it), and send the webcam shots with the form. No framework: the page
// must work from the vendored files alone.
"use strict";

(function () {
  const form = document.getElementById("enrol-form");
  if (!form) return;
  const csrf = form.querySelector("input[name=csrf_token]").value;
  const maxShots = Number(form.dataset.maxShots || 20);
  const shots = [];  // webcam shots: File objects, sent as photos
  let stream = null;

  // One check at a time: the gateway limits each person to a few enrolment calls a second, and
  // a refusal (429) is retried after a pause instead of being shown as the shot's verdict.
  let queue = Promise.resolve();
  function check(file, status) {
    status.textContent = "Waiting to be checked…";
    queue = queue.then(() => checkNow(file, status));
    return queue;
  }

  async function checkNow(file, status) {
    status.textContent = "Checking…";
    for (let attempt = 0; attempt < 4; attempt++) {
      const body = new FormData();
      body.append("shot", file, file.name);
      try {
        // HX-Request: the console answers errors as a fragment for this row, not a whole page
        const reply = await fetch("/enrol/check", {method: "POST", body,
                                                   headers: {"X-CSRF-Token": csrf, "HX-Request": "true"}});
        if (reply.status === 429 && attempt < 3) {
          await new Promise((resolve) => setTimeout(resolve, 1000));
          continue;
        }
        status.innerHTML = await reply.text();  // a server-rendered fragment (escaped by Jinja2)
      } catch (err) {
        status.textContent = "Could not check this shot: " + err;
      }
      return;
    }
  }

  function row(list, file, removable) {
    const item = document.createElement("li");
    const img = document.createElement("img");
    img.src = URL.createObjectURL(file);
    img.alt = file.name;
    const status = document.createElement("span");
    status.className = "status";
    item.append(img, status);
    if (removable) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Remove " + file.name;
      remove.addEventListener("click", () => {
        shots.splice(shots.indexOf(file), 1);
        item.remove();
        syncShots();
      });
      item.append(remove);
    }
    list.append(item);
    return status;
  }

  function syncShots() {
    const transfer = new DataTransfer();
    shots.forEach((file) => transfer.items.add(file));
    document.getElementById("webcam-photos").files = transfer.files;
  }

  document.getElementById("photos").addEventListener("change", (event) => {
    const list = document.getElementById("upload-checks");
    list.replaceChildren();
    for (const file of event.target.files) check(file, row(list, file, false));
  });

  const video = document.getElementById("camera-video");
  const shotButton = document.getElementById("camera-shot");
  const cameraStatus = document.getElementById("camera-status");

  const startButton = document.getElementById("camera-start");
  startButton.addEventListener("click", async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({video: {width: 1280, height: 720}, audio: false});
      video.srcObject = stream;
      await video.play();  // autoplay alone does not start a preview that is scrolled out of view
      startButton.disabled = true;
      shotButton.disabled = false;
      cameraStatus.textContent = "Camera on. Look at the camera and take a shot.";
    } catch (err) {
      cameraStatus.textContent = "The camera could not be started (" + err.name + "): allow camera access, or upload photos instead.";
    }
  });

  shotButton.addEventListener("click", () => {
    if (video.readyState < 2) {  // no frame yet: a shot would be blank
      cameraStatus.textContent = "The camera has not shown a picture yet: wait a moment, then take the shot.";
      return;
    }
    if (shots.length >= maxShots) {
      cameraStatus.textContent = "At most " + maxShots + " shots: remove one first.";
      return;
    }
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => {
      const file = new File([blob], "webcam-" + (shots.length + 1) + ".jpg", {type: "image/jpeg"});
      shots.push(file);
      syncShots();
      check(file, row(document.getElementById("webcam-shots"), file, true));
    }, "image/jpeg", 0.92);
  });

  window.addEventListener("pagehide", () => {
    if (stream) stream.getTracks().forEach((track) => track.stop());
  });
})();
