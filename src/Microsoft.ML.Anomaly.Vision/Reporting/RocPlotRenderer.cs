using System.Globalization;
using SkiaSharp;

namespace Microsoft.ML.Anomaly.Vision.Reporting;

/// <summary>Draws ROC curves (axes, grid, chance diagonal, legend) to a PNG with SkiaSharp.</summary>
internal static class RocPlotRenderer
{
    /// <summary>Line colours, one per curve (cycled).</summary>
    internal static readonly SKColor[] Palette =
    [
        new(31, 119, 180), new(255, 127, 14), new(44, 160, 44), new(214, 39, 40),
        new(148, 103, 189), new(140, 86, 75), new(227, 119, 194), new(23, 190, 207),
    ];

    public static void Write(IReadOnlyList<(string Label, double[] Fpr, double[] Tpr)> lines, string outputPng, int width, int height)
    {
        using var surface = SkiaDrawing.CreateSurface(width, height);
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);

        float fontSize = Math.Clamp(height / 32f, 9f, 16f);
        using var font = new SKFont(SkiaDrawing.Font, fontSize);
        using var titleFont = new SKFont(SkiaDrawing.Font, fontSize * 1.25f);
        using var text = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var grid = new SKPaint { Color = new SKColor(225, 225, 225), StrokeWidth = 1, Style = SKPaintStyle.Stroke };
        using var axis = new SKPaint { Color = SKColors.Black, StrokeWidth = 1, Style = SKPaintStyle.Stroke, IsAntialias = true };
        using var dash = SKPathEffect.CreateDash([6f, 4f], 0);
        using var diagonal = new SKPaint { Color = SKColors.Gray, StrokeWidth = 1, Style = SKPaintStyle.Stroke, IsAntialias = true, PathEffect = dash };

        float left = fontSize * 4.5f, right = fontSize * 1.5f, top = fontSize * 3f, bottom = fontSize * 4f;
        var area = new SKRect(left, top, width - right, height - bottom);
        float X(double fpr) => area.Left + (float)(fpr * area.Width);
        float Y(double tpr) => area.Bottom - (float)(tpr * area.Height);

        // Grid, ticks and tick labels every 0.2.
        for (int i = 0; i <= 5; i++)
        {
            double v = i / 5.0;
            string label = v.ToString("0.0", CultureInfo.InvariantCulture);
            canvas.DrawLine(X(v), area.Top, X(v), area.Bottom, grid);
            canvas.DrawLine(area.Left, Y(v), area.Right, Y(v), grid);
            canvas.DrawText(label, X(v) - (SkiaDrawing.Measure(font, label) / 2), area.Bottom + (fontSize * 1.3f), font, text);
            canvas.DrawText(label, area.Left - SkiaDrawing.Measure(font, label) - (fontSize * 0.4f), Y(v) + (fontSize * 0.35f), font, text);
        }
        canvas.DrawRect(area, axis);
        canvas.DrawLine(X(0), Y(0), X(1), Y(1), diagonal);

        // Curves.
        for (int c = 0; c < lines.Count; c++)
        {
            var (_, fpr, tpr) = lines[c];
            using var paint = new SKPaint
            {
                Color = Palette[c % Palette.Length], StrokeWidth = 2, Style = SKPaintStyle.Stroke, IsAntialias = true,
                StrokeJoin = SKStrokeJoin.Round,
            };
            using var path = new SKPath();
            path.MoveTo(X(fpr[0]), Y(tpr[0]));
            for (int i = 1; i < fpr.Length; i++)
                path.LineTo(X(fpr[i]), Y(tpr[i]));
            canvas.DrawPath(path, paint);
        }

        // Titles.
        const string title = "ROC curve (image level)";
        canvas.DrawText(title, ((area.Left + area.Right) / 2) - (SkiaDrawing.Measure(titleFont, title) / 2), top - (fontSize * 1.1f), titleFont, text);
        const string xLabel = "False positive rate";
        canvas.DrawText(xLabel, ((area.Left + area.Right) / 2) - (SkiaDrawing.Measure(font, xLabel) / 2), area.Bottom + (fontSize * 2.8f), font, text);
        const string yLabel = "True positive rate";
        canvas.Save();
        canvas.Translate(fontSize * 1.2f, (area.Top + area.Bottom) / 2);
        canvas.RotateDegrees(-90);
        canvas.DrawText(yLabel, -SkiaDrawing.Measure(font, yLabel) / 2, 0, font, text);
        canvas.Restore();

        // Legend, lower right inside the plot.
        float lineHeight = fontSize * 1.4f, swatch = fontSize * 1.8f, pad = fontSize * 0.5f;
        float legendWidth = 0;
        foreach (var (label, _, _) in lines)
            legendWidth = Math.Max(legendWidth, SkiaDrawing.Measure(font, label));
        legendWidth += swatch + (3 * pad);
        float legendHeight = (lines.Count * lineHeight) + pad;
        var box = new SKRect(area.Right - legendWidth - pad, area.Bottom - legendHeight - pad, area.Right - pad, area.Bottom - pad);
        using var boxFill = new SKPaint { Color = new SKColor(255, 255, 255, 230), Style = SKPaintStyle.Fill };
        canvas.DrawRect(box, boxFill);
        canvas.DrawRect(box, axis);
        for (int c = 0; c < lines.Count; c++)
        {
            float y = box.Top + pad + (lineHeight * (c + 0.5f));
            using var paint = new SKPaint { Color = Palette[c % Palette.Length], StrokeWidth = 3, Style = SKPaintStyle.Stroke };
            canvas.DrawLine(box.Left + pad, y, box.Left + pad + swatch, y, paint);
            canvas.DrawText(lines[c].Label, box.Left + (2 * pad) + swatch, y + (fontSize * 0.35f), font, text);
        }
        canvas.Flush();
        SkiaDrawing.SavePng(surface, outputPng);
    }
}
