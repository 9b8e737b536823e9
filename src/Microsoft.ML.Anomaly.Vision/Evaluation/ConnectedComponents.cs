namespace Microsoft.ML.Anomaly.Vision.Evaluation;

/// <summary>Connected-component labelling of binary masks with 8-connectivity (diagonal neighbours join).</summary>
internal static class ConnectedComponents
{
    /// <summary>
    /// Labels the true pixels of a row-major <paramref name="height"/>×<paramref name="width"/> mask.
    /// <paramref name="labels"/> receives 0 for background and 1..count for the regions; <paramref name="sizes"/>
    /// is cleared and receives the pixel count of each region (index = label − 1). Returns the region count.
    /// </summary>
    public static int Label8(ReadOnlySpan<bool> mask, int height, int width, Span<int> labels, List<int> sizes)
    {
        if (height <= 0 || width <= 0)
            throw new ArgumentOutOfRangeException(nameof(height), "The mask size must be positive.");
        int count = height * width;
        if (mask.Length != count || labels.Length != count)
            throw new ArgumentException($"Mask and label buffers must hold {height}×{width} = {count} entries.", nameof(mask));
        labels.Clear();
        sizes.Clear();
        var stack = new Stack<int>();
        int next = 0;
        for (int start = 0; start < count; start++)
        {
            if (!mask[start] || labels[start] != 0)
                continue;
            next++;
            int size = 0;
            labels[start] = next;
            stack.Push(start);
            while (stack.Count > 0)
            {
                int p = stack.Pop();
                size++;
                int y = p / width, x = p - (y * width);
                for (int dy = -1; dy <= 1; dy++)
                {
                    int ny = y + dy;
                    if ((uint)ny >= (uint)height)
                        continue;
                    for (int dx = -1; dx <= 1; dx++)
                    {
                        int nx = x + dx;
                        if ((uint)nx >= (uint)width)
                            continue;
                        int q = (ny * width) + nx;
                        if (mask[q] && labels[q] == 0)
                        {
                            labels[q] = next;
                            stack.Push(q);
                        }
                    }
                }
            }
            sizes.Add(size);
        }
        return next;
    }
}
