using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;

namespace AnomalyVision.Samples;

/// <summary>The samples' command-line handling: System.CommandLine parses, and a usage error ends in a message and the usage, never a stack trace.</summary>
internal static class CommandLineParsing
{
    /// <summary>The exit code of a usage error.</summary>
    public const int UsageErrorExitCode = 2;

    /// <summary>
    /// Parses <paramref name="args"/>. Returns the result to run with, or <see langword="null"/> when there is nothing to run: after
    /// <c>--help</c> (exit code 0) or a usage error, which is printed with the usage (exit code <see cref="UsageErrorExitCode"/>).
    /// </summary>
    public static ParseResult? Parse(RootCommand command, string[] args, out int exitCode)
    {
        ParseResult result = command.Parse(args);
        if (result.Errors.Count > 0)
        {
            result.Invoke();
            exitCode = UsageErrorExitCode;
            return null;
        }
        if (result.Action is not null)
        {
            exitCode = result.Invoke();
            return null;
        }
        exitCode = 0;
        return result;
    }

    /// <summary>A number of at least <paramref name="minimum"/>; anything else is a usage error that names the option.</summary>
    public static Option<T> AtLeast<T>(this Option<T> option, T minimum) where T : struct, INumber<T>
    {
        option.CustomParser = result => ParseAtLeast(result, option.Name, minimum) ?? default;
        return option;
    }

    /// <inheritdoc cref="AtLeast{T}(Option{T}, T)"/>
    public static Option<T?> AtLeast<T>(this Option<T?> option, T minimum) where T : struct, INumber<T>
    {
        option.CustomParser = result => ParseAtLeast(result, option.Name, minimum);
        return option;
    }

    private static T? ParseAtLeast<T>(ArgumentResult result, string name, T minimum) where T : struct, INumber<T>
    {
        string token = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        if (!T.TryParse(token, CultureInfo.InvariantCulture, out T value))
        {
            result.AddError($"{name} takes a number; got '{token}'.");
            return null;
        }
        if (value < minimum)
        {
            result.AddError(string.Create(CultureInfo.InvariantCulture, $"{name} must be at least {minimum}; got {value}."));
            return null;
        }
        return value;
    }

    /// <summary>A comma-separated list whose items all come from <paramref name="allowed"/>.</summary>
    public static Option<string> ListOf(this Option<string> option, params string[] allowed)
    {
        option.Validators.Add(result =>
        {
            string[] items = SplitList(result.GetValueOrDefault<string>() ?? "");
            if (items.Length == 0 || items.Any(i => !allowed.Contains(i)))
                result.AddError($"{option.Name} takes a comma-separated list of {string.Join(", ", allowed)}.");
        });
        return option;
    }

    /// <summary>The items of a comma-separated list, trimmed, without empty ones.</summary>
    public static string[] SplitList(string list) => list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
