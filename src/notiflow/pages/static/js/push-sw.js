// push-sw.js: the notification center's service worker, for Web Push only (it caches nothing).
// The payload is notiflow's NotificationData JSON plus "url" (docs/delivery.md, Web Push).
self.addEventListener("push", (event) => {
  let notification = {};
  try { notification = event.data ? event.data.json() : {}; } catch (error) { /* not JSON */ }
  const title = notification.title || "notiflow";
  event.waitUntil(self.registration.showNotification(title, {
    body: notification.message || "",
    tag: notification.id,
    data: { url: notification.url || "/" },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || "/";
  event.waitUntil(self.clients.openWindow(url));
});
