using System.Text;
using System.Text.RegularExpressions;

namespace Bastion.Policy;

/// <summary>
/// Globs and `~regex` patterns, compiled once at load. Regexes run on hostile input, so they use the
/// non-backtracking engine where the pattern allows it, and a match timeout otherwise.
/// </summary>
public static class Patterns
{
    static readonly TimeSpan MatchTimeout = TimeSpan.FromMilliseconds(50);

    public static Regex CompileRegex(string pattern, bool ignoreCase)
    {
        var opts = RegexOptions.CultureInvariant | (ignoreCase ? RegexOptions.IgnoreCase : 0);
        try { return new Regex(pattern, opts | RegexOptions.NonBacktracking); }
        catch (NotSupportedException) { return new Regex(pattern, opts | RegexOptions.Compiled, MatchTimeout); }
    }

    /// <summary>
    /// A glob as an anchored regex. With <paramref name="pathAware"/>, `*` and `?` stop at '/', and `**` crosses it
    /// (`/pub/**` matches `/pub/a/b`, and `/pub` itself); otherwise `*` matches anything.
    /// </summary>
    public static Regex CompileGlob(string glob, bool pathAware, bool ignoreCase)
    {
        var sb = new StringBuilder("^");
        for (int i = 0; i < glob.Length; i++)
        {
            char c = glob[i];
            if (c == '*')
            {
                bool dbl = i + 1 < glob.Length && glob[i + 1] == '*';
                if (dbl)
                {
                    i++;
                    // "/**" at the end also matches the folder itself.
                    if (pathAware && sb.Length > 1 && sb[^1] == '/' && i == glob.Length - 1)
                    {
                        sb.Length--;
                        sb.Append("(/.*)?");
                    }
                    else sb.Append(".*");
                }
                else sb.Append(pathAware ? "[^/]*" : ".*");
            }
            else if (c == '?') sb.Append(pathAware ? "[^/]" : ".");
            else sb.Append(Regex.Escape(c.ToString()));
        }
        sb.Append('$');
        var opts = RegexOptions.CultureInvariant | RegexOptions.NonBacktracking | (ignoreCase ? RegexOptions.IgnoreCase : 0);
        return new Regex(sb.ToString(), opts);
    }

    public static bool IsGlob(string s) => s.IndexOfAny(['*', '?']) >= 0;
}

/// <summary>One string pattern: exact text, a glob, or a `~regex`.</summary>
public sealed class StringPattern
{
    readonly string? _exact;
    readonly Regex? _regex;
    /// <summary>A glob's literal text, checked before its regex runs (<see cref="GlobFilter"/>).</summary>
    readonly GlobFilter? _filter;
    readonly bool _ignoreCase;
    public string Text { get; }

    public StringPattern(string text, bool pathAware, bool ignoreCase)
    {
        Text = text;
        _ignoreCase = ignoreCase;
        if (text.StartsWith('~')) _regex = Patterns.CompileRegex(text[1..], ignoreCase);
        else if (Patterns.IsGlob(text))
        {
            _regex = Patterns.CompileGlob(text, pathAware, ignoreCase);
            _filter = GlobFilter.For(text, pathAware, ignoreCase);
        }
        else _exact = text;
    }

    public bool IsMatch(ReadOnlySpan<char> value)
    {
        if (_exact is not null)
            return _ignoreCase ? value.Equals(_exact, StringComparison.OrdinalIgnoreCase) : value.SequenceEqual(_exact);
        if (_filter?.Match(value) is { } decided) return decided;
        try { return _regex!.IsMatch(value); }
        catch (RegexMatchTimeoutException) { return false; }
    }
}
