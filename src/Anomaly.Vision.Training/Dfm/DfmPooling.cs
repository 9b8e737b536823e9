namespace Anomaly.Vision.Training;

/// <summary>DFM's feature vector: the layer map average-pooled (square window, stride = window, no padding) and flattened.</summary>
internal static class DfmPooling
{
    /// <summary>Pooled extent of a side of <paramref name="size"/> for window <paramref name="kernel"/>: ⌊size / kernel⌋.</summary>
    public static int PooledSize(int size, int kernel) => size / kernel;

    /// <summary>
    /// Average-pools one CHW map with a <paramref name="kernel"/>×<paramref name="kernel"/> window and stride,
    /// dropping a partial window at the bottom and right edges (floor mode), into C×⌊H/k⌋×⌊W/k⌋ values.
    /// </summary>
    /// <param name="map">The map, <paramref name="shape"/>.Size values in CHW order.</param>
    /// <param name="shape">Its shape.</param>
    /// <param name="kernel">Window side; 1 copies the map.</param>
    /// <param name="destination">Receives the pooled map in CHW order.</param>
    public static void Pool(ReadOnlySpan<float> map, LayerShape shape, int kernel, Span<float> destination)
    {
        if (kernel <= 1)
        {
            map[..shape.Size].CopyTo(destination);
            return;
        }
        int h = shape.Height, w = shape.Width;
        int ph = h / kernel, pw = w / kernel;
        float area = kernel * kernel;
        for (int c = 0; c < shape.Channels; c++)
        {
            var plane = map.Slice(c * h * w, h * w);
            var output = destination.Slice(c * ph * pw, ph * pw);
            for (int oy = 0; oy < ph; oy++)
            {
                for (int ox = 0; ox < pw; ox++)
                {
                    float sum = 0;
                    for (int dy = 0; dy < kernel; dy++)
                    {
                        var row = plane.Slice((oy * kernel + dy) * w + ox * kernel, kernel);
                        foreach (float v in row)
                            sum += v;
                    }
                    output[oy * pw + ox] = sum / area;
                }
            }
        }
    }
}
