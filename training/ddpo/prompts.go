package ddpo

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// InstructBooth (Chae et al. 2023) fine-tunes a personalised model with
// prompts of two kinds built from one list of activities: with the
// subject's identifier, "a [identifier] [class] [activity]", and without,
// "a [class] [activity]"; training on both keeps the class prior and
// stabilises RL. Prompts builds that set.
//
// The default activities depend on the kind of subject. Five of them are
// the paper's examples ("playing soccer", "riding a bike", "cooking a
// gourmet meal", "floating on the water", "with popcorn in it"); the rest
// of each list is ours, in the same spirit: situations a subject of that
// group can plausibly be shown in that the personalised model tends to
// ignore in favour of its training photographs.

// Group is a kind of subject with its own default activities.
type Group string

const (
	Pets       Group = "pets"       // living subjects: dogs, cats, ...
	Toys       Group = "toys"       // plushies, figures, robots, ...
	Containers Group = "containers" // bowls, vases, cans, backpacks, ...
	Vehicles   Group = "vehicles"   // cars, bikes, boats, ...
	Objects    Group = "objects"    // anything else
)

var defaultActivities = map[Group][]string{
	Pets: {
		"playing soccer", "riding a bike", "cooking a gourmet meal", "floating on the water",
		"playing the guitar", "reading a book in a library", "wearing a chef outfit",
		"skiing down a snowy mountain", "surfing a big wave", "sleeping in a hammock",
	},
	Toys: {
		"playing soccer", "riding a bike", "cooking a gourmet meal", "floating on the water",
		"playing the guitar", "reading a book in a library", "climbing a mountain",
		"skiing down a snowy mountain", "driving a race car", "flying a kite on the beach",
	},
	Containers: {
		"with popcorn in it", "floating on the water", "filled with flowers", "with ice cubes in it",
		"filled with fruit", "full of candy", "on a snowy mountain top", "on a table in a cafe",
		"in the middle of a desert", "covered in autumn leaves",
	},
	Vehicles: {
		"floating on the water", "driving through a desert", "covered in snow", "parked on the moon",
		"driving on a race track", "in a flower field", "under the northern lights",
		"crossing a bridge in the rain", "in a futuristic city at night", "on a beach at sunset",
	},
	Objects: {
		"floating on the water", "on a snowy mountain top", "in the middle of a desert",
		"on a table in a cafe", "in a flower field", "under the northern lights",
		"covered in autumn leaves", "on a beach at sunset", "in a futuristic city at night",
		"in a jungle",
	},
}

// classGroups maps common class nouns (DreamBooth's dataset and frequent
// user subjects) to their group.
var classGroups = map[string]Group{
	"dog": Pets, "cat": Pets, "puppy": Pets, "kitten": Pets, "bird": Pets, "parrot": Pets, "rabbit": Pets,
	"hamster": Pets, "horse": Pets, "animal": Pets, "pet": Pets,
	"toy": Toys, "plushie": Toys, "plush": Toys, "teddybear": Toys, "teddy": Toys, "figure": Toys,
	"figurine": Toys, "robot": Toys, "doll": Toys, "monster": Toys, "mascot": Toys, "stuffed animal": Toys,
	"bowl": Containers, "vase": Containers, "can": Containers, "cup": Containers, "mug": Containers,
	"teapot": Containers, "backpack": Containers, "bag": Containers, "box": Containers, "basket": Containers,
	"jar": Containers, "bottle": Containers, "pot": Containers, "bucket": Containers,
	"car": Vehicles, "truck": Vehicles, "bike": Vehicles, "bicycle": Vehicles, "motorcycle": Vehicles,
	"boat": Vehicles, "bus": Vehicles, "van": Vehicles, "train": Vehicles, "scooter": Vehicles,
}

// GroupOf returns the group of a class noun (its last word is tried too,
// so "red car" is a vehicle); unknown nouns are Objects.
func GroupOf(class string) Group {
	c := strings.ToLower(strings.TrimSpace(class))
	if g, ok := classGroups[c]; ok {
		return g
	}
	if f := strings.Fields(c); len(f) > 1 {
		if g, ok := classGroups[f[len(f)-1]]; ok {
			return g
		}
	}
	return Objects
}

// DefaultActivities returns the default activities for a class noun.
func DefaultActivities(class string) []string {
	return append([]string(nil), defaultActivities[GroupOf(class)]...)
}

// Prompts returns, for every activity, "a <identifier> <class> <activity>"
// and "a <class> <activity>" (identifier first), in activity order. An
// empty identifier gives only the second kind.
func Prompts(identifier, class string, activities []string) ([]string, error) {
	class = strings.Join(strings.Fields(class), " ")
	identifier = strings.Join(strings.Fields(identifier), " ")
	if class == "" {
		return nil, fmt.Errorf("ddpo: prompts need a class noun")
	}
	if len(activities) == 0 {
		return nil, fmt.Errorf("ddpo: prompts need at least one activity")
	}
	var out []string
	for _, a := range activities {
		a = strings.Join(strings.Fields(a), " ")
		if a == "" {
			continue
		}
		if identifier != "" {
			out = append(out, "a "+identifier+" "+class+" "+a)
		}
		out = append(out, "a "+class+" "+a)
	}
	return out, nil
}

// ReadActivities reads activities from a text file, one per line; blank
// lines and lines starting with '#' are skipped.
func ReadActivities(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no activities (one per line)", path)
	}
	return out, nil
}
