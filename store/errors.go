package store

import (
	"errors"
	"fmt"
)

// These errors can be returned by Open.
var (
	// ErrLocked is returned by Open when another process (or another DB in
	// this process) holds the database file open and does not let go of it
	// within Options.Timeout. The returned error wraps ErrLocked and names
	// the file.
	ErrLocked = errors.New("database is already open by another InstructBooth")

	// ErrSchemaTooNew is returned by Open when the file was written by a
	// newer InstructBooth whose schema this code does not know. The file is
	// left exactly as it was found.
	ErrSchemaTooNew = errors.New("database schema is newer than this InstructBooth understands")

	// ErrNotStore is returned by Open when the file is a bbolt database that
	// holds buckets but no InstructBooth schema marker. The file is left as
	// it was found.
	ErrNotStore = errors.New("not an InstructBooth database")
)

// These errors can be returned by the methods of a DB.
var (
	// ErrNotFound is returned when a record (or an image, a blob or a
	// checkpoint) with the requested id does not exist. Returned errors wrap
	// it and name the kind of record and the id.
	ErrNotFound = errors.New("not found")

	// ErrInvalid is returned when a record passed to a Put or Add method
	// breaks the record's contract (a missing field, an unknown kind or
	// status, an id that is not a UUID, a non-finite score, ...). Nothing
	// is written when it is returned.
	ErrInvalid = errors.New("invalid record")

	// ErrCorrupt is returned by Check, and by any method that finds the
	// database in a state the store never writes (a missing bucket, an
	// undecodable record).
	ErrCorrupt = errors.New("database is inconsistent")

	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("database is closed")
)

// notFound wraps ErrNotFound with the kind of record and its id.
func notFound(kind, id string) error {
	return fmt.Errorf("store: %s %q: %w", kind, id, ErrNotFound)
}

// invalid wraps ErrInvalid with a description of what is wrong.
func invalid(format string, args ...any) error {
	return fmt.Errorf("store: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// corrupt wraps ErrCorrupt with a description of what is wrong.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("store: %w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}
