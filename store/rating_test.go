package store

import (
	"testing"
	"time"
)

// Ensure PutRating stores valid ratings and rejects invalid ones.
func TestDB_PutRating_validation(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Rating
		want error
	}{
		{"A", Rating{ImageA: "x", ImageB: "y", Choice: ChoiceA}, nil},
		{"tie", Rating{ImageA: "x", ImageB: "y", RunA: "r1", RunB: "r2", Choice: ChoiceTie, Prompt: "p"}, nil},
		{"no choice", Rating{ImageA: "x", ImageB: "y"}, ErrInvalid},
		{"bad choice", Rating{ImageA: "x", ImageB: "y", Choice: "both"}, ErrInvalid},
		{"one image", Rating{ImageA: "x", Choice: ChoiceB}, ErrInvalid},
		{"id not a uuid", Rating{ID: "r", ImageA: "x", ImageB: "y", Choice: ChoiceB}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := mustOpen(t)
			r := tc.r
			wantErr(t, db.PutRating(&r), tc.want)
			all, err := db.Ratings()
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil {
				if len(all) != 0 {
					t.Errorf("%d ratings stored after an error", len(all))
				}
				return
			}
			if len(all) != 1 || all[0] != r || r.ID == "" || r.Time.IsZero() {
				t.Errorf("stored %+v, want %+v", all, r)
			}
		})
	}
}

// Ensure PreferenceRate counts ratings of the pair in either position,
// ties as halves, and ignores other pairs.
func TestDB_PreferenceRate_pairs(t *testing.T) {
	db := mustOpen(t)
	t0 := time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC)
	for i, r := range []Rating{
		{RunA: "new", RunB: "old", Choice: ChoiceA},   // new wins
		{RunA: "new", RunB: "old", Choice: ChoiceA},   // new wins
		{RunA: "old", RunB: "new", Choice: ChoiceB},   // new wins
		{RunA: "old", RunB: "new", Choice: ChoiceA},   // old wins
		{RunA: "new", RunB: "old", Choice: ChoiceTie}, // half
		{RunA: "new", RunB: "other", Choice: ChoiceA}, // other pair
	} {
		r.ImageA, r.ImageB, r.Time = "a", "b", t0.Add(time.Duration(i)*time.Second)
		if err := db.PutRating(&r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		a, b  string
		rate  float64
		count int
	}{
		{"new", "old", 3.5 / 5, 5},
		{"old", "new", 1.5 / 5, 5},
		{"new", "other", 1, 1},
		{"other", "old", 0, 0},
	} {
		rate, n, err := db.PreferenceRate(tc.a, tc.b)
		if err != nil {
			t.Fatal(err)
		}
		if rate != tc.rate || n != tc.count {
			t.Errorf("PreferenceRate(%s, %s) = %v, %d; want %v, %d", tc.a, tc.b, rate, n, tc.rate, tc.count)
		}
	}
	all, _ := db.Ratings()
	for i := 1; i < len(all); i++ {
		if all[i].Time.Before(all[i-1].Time) {
			t.Errorf("Ratings not in time order at %d", i)
		}
	}
}
