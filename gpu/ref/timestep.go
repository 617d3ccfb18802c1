package ref

import "math"

func timestepFreq(j, half int, shift, maxPeriod float64) float64 {
	return math.Exp(-math.Log(maxPeriod) * float64(j) / (float64(half) - shift))
}

// TimestepEmbedding is diffusers' get_timestep_embedding for t [N]: [N, dim].
func TimestepEmbedding(t *T, dim int, flip bool, shift, maxPeriod float64) *T {
	half := dim / 2
	n := len(t.Data)
	out := New(n, dim)
	for r := 0; r < n; r++ {
		for j := 0; j < half; j++ {
			a := t.Data[r] * timestepFreq(j, half, shift, maxPeriod)
			s, c := math.Sin(a), math.Cos(a)
			if flip {
				s, c = c, s
			}
			out.Data[r*dim+j] = s
			out.Data[r*dim+half+j] = c
		}
	}
	return out
}

// TimestepEmbeddingBackward returns dL/dt given g = dL/demb [N, dim].
func TimestepEmbeddingBackward(t *T, dim int, flip bool, shift, maxPeriod float64, g *T) *T {
	half := dim / 2
	n := len(t.Data)
	dt := New(n)
	for r := 0; r < n; r++ {
		sc, cc := 0, half
		if flip {
			sc, cc = half, 0
		}
		for j := 0; j < half; j++ {
			f := timestepFreq(j, half, shift, maxPeriod)
			a := t.Data[r] * f
			dt.Data[r] += f * (g.Data[r*dim+sc+j]*math.Cos(a) - g.Data[r*dim+cc+j]*math.Sin(a))
		}
	}
	return dt
}
