-- Uploads are bounded: per uploader over a window of time, and per app in
-- total. This index answers both sums without reading the files' rows.
CREATE INDEX files_by_uploader ON files (app_id, uploader_id, created_at, size);

-- A file is attached once a message refers to it. Files never attached
-- are removed after a grace period (FileService.RemoveUnattached).
ALTER TABLE files ADD COLUMN attached INTEGER NOT NULL DEFAULT 0;
UPDATE files SET attached = 1 WHERE EXISTS (
	SELECT 1 FROM messages m, json_each(m.parts) j
	WHERE m.app_id = files.app_id AND m.conversation_id = files.conversation_id
		AND json_extract(j.value, '$.fileId') = files.id);
CREATE INDEX files_unattached ON files (created_at) WHERE attached = 0;
