package store

import (
	"errors"
	"slices"
	"testing"
)

// Ensure PutBaseModel stores valid records, keeps Added on update, and
// rejects invalid ones.
func TestDB_PutBaseModel_validation(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    BaseModel
		want error
	}{
		{"full", BaseModel{Name: "SD 1.5", Path: "/models/v1-5.safetensors", Hash: sha([]byte("w")), Size: 4 << 30, Arch: "sd15"}, nil},
		{"minimal", BaseModel{Name: "SD 2.1", Path: "/models/v2-1"}, nil},
		{"no name", BaseModel{Path: "/models/x"}, ErrInvalid},
		{"no path", BaseModel{Name: "x"}, ErrInvalid},
		{"id not a uuid", BaseModel{ID: "sd15", Name: "x", Path: "/x"}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := mustOpen(t)
			m := tc.m
			err := db.PutBaseModel(&m)
			wantErr(t, err, tc.want)
			all, _ := db.BaseModels()
			if err != nil {
				if len(all) != 0 {
					t.Errorf("%d records after an error", len(all))
				}
				return
			}
			if len(all) != 1 || all[0] != m || m.ID == "" || m.Added.IsZero() {
				t.Fatalf("stored %+v, want %+v", all, m)
			}
			upd := BaseModel{ID: m.ID, Name: m.Name, Path: m.Path, Arch: "sd21"}
			if err := db.PutBaseModel(&upd); err != nil {
				t.Fatal(err)
			}
			got, err := db.BaseModel(m.ID)
			if err != nil || got.Arch != "sd21" || !got.Added.Equal(m.Added) {
				t.Errorf("after update %+v, %v", got, err)
			}
		})
	}
}

// Ensure BaseModels sorts by name and DeleteBaseModel removes one record.
func TestDB_DeleteBaseModel_one(t *testing.T) {
	db := mustOpen(t)
	ids := map[string]string{}
	for _, name := range []string{"sd21", "SD15", "anything"} {
		m := BaseModel{Name: name, Path: "/m/" + name}
		if err := db.PutBaseModel(&m); err != nil {
			t.Fatal(err)
		}
		ids[name] = m.ID
	}
	if err := db.DeleteBaseModel(ids["sd21"]); err != nil {
		t.Fatal(err)
	}
	all, _ := db.BaseModels()
	var names []string
	for _, m := range all {
		names = append(names, m.Name)
	}
	if want := []string{"anything", "SD15"}; !slices.Equal(names, want) {
		t.Errorf("models %q, want %q", names, want)
	}
	if _, err := db.BaseModel(ids["sd21"]); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted model: %v", err)
	}
	wantErr(t, db.DeleteBaseModel(ids["sd21"]), ErrNotFound)
}
