namespace Microsoft.ML.Anomaly.Vision;

/// <summary>
/// anomalib's min-max normalisation of scores and maps: normalized = (x − threshold)/(max − min) + 0.5,
/// clamped to [0, 1], so the decision threshold maps to 0.5. <c>min</c> and <c>max</c> are the smallest and
/// largest values seen on validation data (image scores for scores, map pixels for maps).
/// </summary>
public static class MinMaxNormalization
{
    /// <summary>Normalises one value.</summary>
    /// <param name="value">Raw score or map value.</param>
    /// <param name="threshold">Raw decision threshold (maps to 0.5).</param>
    /// <param name="min">Smallest raw value on validation data.</param>
    /// <param name="max">Largest raw value on validation data; must be greater than <paramref name="min"/>.</param>
    /// <exception cref="ArgumentException">An argument is not finite or <paramref name="max"/> ≤ <paramref name="min"/>.</exception>
    public static float Normalize(float value, float threshold, float min, float max)
    {
        Check(threshold, min, max);
        return Apply(value, threshold, (double)max - min);
    }

    /// <summary>Normalises every value of <paramref name="values"/> into <paramref name="destination"/> (which may be the same memory).</summary>
    /// <param name="values">Raw scores or map values.</param>
    /// <param name="threshold">Raw decision threshold (maps to 0.5).</param>
    /// <param name="min">Smallest raw value on validation data.</param>
    /// <param name="max">Largest raw value on validation data; must be greater than <paramref name="min"/>.</param>
    /// <param name="destination">Receives the normalised values; at least as long as <paramref name="values"/>.</param>
    /// <exception cref="ArgumentException">An argument is not finite, <paramref name="max"/> ≤ <paramref name="min"/>, or the destination is too short.</exception>
    public static void Normalize(ReadOnlySpan<float> values, float threshold, float min, float max, Span<float> destination)
    {
        Check(threshold, min, max);
        if (destination.Length < values.Length)
            throw new ArgumentException($"The destination holds {destination.Length} values but {values.Length} are needed.", nameof(destination));
        double range = (double)max - min;
        for (int i = 0; i < values.Length; i++)
            destination[i] = Apply(values[i], threshold, range);
    }

    private static float Apply(float value, float threshold, double range)
    {
        double n = ((value - (double)threshold) / range) + 0.5;
        return (float)Math.Clamp(n, 0.0, 1.0);
    }

    private static void Check(float threshold, float min, float max)
    {
        if (!float.IsFinite(threshold))
            throw new ArgumentException($"The threshold must be finite, got {threshold}.", nameof(threshold));
        if (!float.IsFinite(min))
            throw new ArgumentException($"The minimum must be finite, got {min}.", nameof(min));
        if (!float.IsFinite(max))
            throw new ArgumentException($"The maximum must be finite, got {max}.", nameof(max));
        if (!(max > min))
            throw new ArgumentException($"The maximum ({max}) must be greater than the minimum ({min}).", nameof(max));
    }
}
