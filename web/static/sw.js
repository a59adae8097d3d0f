// The service worker of Tidings' Web Push notifications, served at /sw.js
// and registered by the browser SDK's registerWebPush. It shows each push
// (its payload is tidings.d.ts's PushPayload) as a notification, one per
// conversation (a newer one replaces it), sets the app's badge to the
// unread count where the browser has badges, and opens the conversation
// when the notification is clicked.

self.addEventListener('push', event => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { body: event.data ? event.data.text() : '' };
  }
  const shown = self.registration.showNotification(data.title || 'New message', {
    body: data.body || '',
    tag: data.conversationId ? `tidings:${data.appId}:${data.conversationId}` : undefined,
    renotify: !!data.conversationId,
    data,
  });
  const badge = typeof data.badge === 'number' && 'setAppBadge' in self.navigator
    ? self.navigator.setAppBadge(data.badge).catch(() => {}) : Promise.resolve();
  event.waitUntil(Promise.all([shown, badge]));
});

self.addEventListener('notificationclick', event => {
  event.notification.close();
  const data = event.notification.data || {};
  const url = new URL('/', self.location.origin);
  if (data.conversationId) url.hash = 'c=' + encodeURIComponent(data.conversationId);
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const w of windows) {
      if (new URL(w.url).origin === self.location.origin) {
        w.postMessage({ type: 'tidings.notificationclick', conversationId: data.conversationId });
        return w.focus();
      }
    }
    return self.clients.openWindow(url.href);
  })());
});
