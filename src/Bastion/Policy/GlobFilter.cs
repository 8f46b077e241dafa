using System.Text;

namespace Bastion.Policy;

/// <summary>
/// What a glob's literal text says about any string it matches, taken apart from the glob the same way
/// <see cref="Patterns.CompileGlob"/> builds its regex: a string that lacks the glob's literal prefix, suffix or inner
/// runs, or is shorter than the glob's fixed part, cannot match, and the regex need not run. Most requests meet
/// most path rules that way (`/**/*.exe` on `/index.html`). Globs that are a literal and an optional tail (`/**`,
/// `/admin/**`) are decided here whole. Everything else is still the regex's call, so verdicts are the regex's.
/// Case-insensitive checks are ASCII-only: a glob with other letters, or a string with any non-ASCII character
/// (where the regex's case table relates `k` and the Kelvin sign), goes to the regex.
/// </summary>
sealed class GlobFilter
{
    readonly string _prefix, _suffix;
    readonly string[] _inner;
    readonly int _minLength;
    readonly bool _ignoreCase;
    /// <summary>The glob is <see cref="_prefix"/> then `(/.*)?` (a path-aware `/**` at the end): decided here.</summary>
    readonly bool _literalAndTail;
    readonly StringComparison _comparison;

    GlobFilter(string prefix, string suffix, string[] inner, int minLength, bool ignoreCase, bool literalAndTail)
    {
        _prefix = prefix;
        _suffix = suffix;
        _inner = inner;
        _minLength = minLength;
        _ignoreCase = ignoreCase;
        _literalAndTail = literalAndTail;
        _comparison = ignoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
    }

    /// <summary>The filter of a glob, or null when it has nothing to offer (or letters outside ASCII under ignore-case).</summary>
    public static GlobFilter? For(string glob, bool pathAware, bool ignoreCase)
    {
        // The glob's pieces as CompileGlob reads them: literal runs split by wildcards.
        var runs = new List<string>();
        var run = new StringBuilder();
        int fixedLength = 0;
        bool startsLiteral = glob.Length > 0 && glob[0] is not ('*' or '?'), endsLiteral = false, wildcard = false, tail = false;
        for (int i = 0; i < glob.Length; i++)
        {
            char c = glob[i];
            if (c is '*' or '?')
            {
                if (c == '?') fixedLength++;
                else if (i + 1 < glob.Length && glob[i + 1] == '*')
                {
                    i++;
                    // "/**" at the end (right after a literal '/'): the '/' and the '**' become the optional tail "(/.*)?".
                    if (pathAware && run.Length > 0 && run[^1] == '/' && i == glob.Length - 1)
                    {
                        run.Length--;
                        fixedLength--;
                        tail = true;
                        break;
                    }
                }
                Flush();
                wildcard = true;
                endsLiteral = false;
                continue;
            }
            if (ignoreCase && !char.IsAscii(c)) return null;
            run.Append(c);
            fixedLength++;
            endsLiteral = true;
        }
        if (tail) endsLiteral = false;
        Flush();
        if (tail && !wildcard) return new GlobFilter(runs.Count == 0 ? "" : runs[0], "", [], fixedLength, ignoreCase, literalAndTail: true);
        if (runs.Count == 0) return null;
        string prefix = startsLiteral ? runs[0] : "";
        string suffix = endsLiteral ? runs[^1] : "";
        var inner = runs.Where((_, k) => !(k == 0 && startsLiteral) && !(k == runs.Count - 1 && endsLiteral)).ToArray();
        return new GlobFilter(prefix, suffix, inner, fixedLength, ignoreCase, literalAndTail: false);

        void Flush()
        {
            if (run.Length > 0) runs.Add(run.ToString());
            run.Clear();
        }
    }

    /// <summary>False when <paramref name="s"/> cannot match; true or false when this decides alone; null: ask the regex.</summary>
    public bool? Match(ReadOnlySpan<char> s)
    {
        if (_ignoreCase && !Ascii.IsValid(s)) return null;
        if (s.Length < _minLength) return false;
        if (!s.StartsWith(_prefix, _comparison)) return false;
        if (_literalAndTail) return Tail(s) || (s.Length > 0 && s[^1] == '\n' && Tail(s[..^1]));
        if (_suffix.Length > 0 && !s.EndsWith(_suffix, _comparison) && !(s.Length > 0 && s[^1] == '\n' && s[..^1].EndsWith(_suffix, _comparison)))
            return false;
        foreach (var r in _inner)
            if (s.IndexOf(r, _comparison) < 0) return false;
        return null;
    }

    /// <summary>`^prefix(/.*)?$` without the regex's final-newline allowance (the caller tries that).</summary>
    bool Tail(ReadOnlySpan<char> s)
    {
        if (!s.StartsWith(_prefix, _comparison)) return false;
        var rest = s[_prefix.Length..];
        return rest.IsEmpty || (rest[0] == '/' && rest[1..].IndexOf('\n') < 0);
    }
}
