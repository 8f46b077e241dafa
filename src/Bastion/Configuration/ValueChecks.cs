using Bastion.Policy;

namespace Bastion.Configuration;

/// <summary>
/// Syntax of the values people type into rules and lists (methods, host names, list entries), so that a typo is an
/// error at `check` rather than a rule that silently never matches.
/// </summary>
public static class ValueChecks
{
    /// <summary>Registered HTTP methods (IANA's registry: RFC 9110, WebDAV and friends, plus QUERY and PURGE).</summary>
    public static readonly string[] KnownMethods =
    [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "QUERY", "PURGE",
        "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "REPORT", "MKCALENDAR",
        "ACL", "BIND", "UNBIND", "REBIND", "LINK", "UNLINK", "MKACTIVITY", "CHECKOUT", "CHECKIN", "UNCHECKOUT",
        "MERGE", "VERSION-CONTROL", "UPDATE", "LABEL", "MKWORKSPACE", "MKREDIRECTREF", "UPDATEREDIRECTREF",
        "BASELINE-CONTROL", "ORDERPATCH",
    ];

    /// <summary>RFC 9110 tchar.</summary>
    public static bool IsToken(ReadOnlySpan<char> s)
    {
        if (s.IsEmpty) return false;
        foreach (var c in s)
            if (!(char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c))) return false;
        return true;
    }

    /// <summary>
    /// Null for a registered method; an error for what is not a token or is one typo away from a registered method
    /// (GTE); a warning (IsWarning) for another extension method, which HTTP allows.
    /// </summary>
    public static (string Message, bool IsWarning)? Method(string method)
    {
        if (!IsToken(method)) return ($"method '{method}' is not an HTTP method token", false);
        var upper = method.ToUpperInvariant();
        if (Array.IndexOf(KnownMethods, upper) >= 0) return null;
        if (Suggest.Closest(upper, KnownMethods) is { } near) return ($"method '{method}' is not an HTTP method (did you mean '{near}'?)", false);
        return ($"method '{method}' is not a registered HTTP method; only requests using exactly it will match", true);
    }

    /// <summary>
    /// A DNS name as rules and lists write it: labels of letters, digits, '-' and '_' (and non-ASCII letters, IDN)
    /// separated by dots, 253 characters at most, each label 63. A trailing dot is allowed.
    /// </summary>
    public static bool IsHostName(ReadOnlySpan<char> s)
    {
        if (s.EndsWith(".")) s = s[..^1];
        if (s.IsEmpty || s.Length > 253) return false;
        int label = 0;
        foreach (var c in s)
        {
            if (c == '.')
            {
                if (label == 0) return false;
                label = 0;
                continue;
            }
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' || (c > 127 && char.IsLetterOrDigit(c)))) return false;
            if (++label > 63) return false;
        }
        return label > 0;
    }

    /// <summary>What a list entry is: names and addresses for host/source rules, mail addresses for smtp rules.</summary>
    public enum EntryKind { Bad, Address, Name, Mail }

    public static EntryKind Classify(ReadOnlySpan<char> e)
    {
        if (e.IsEmpty) return EntryKind.Bad;
        int at = e.IndexOf('@');
        if (at >= 0)
        {
            // a@b.example, *@b.example, @b.example: the part after '@' is a domain.
            var local = e[..at];
            if (e[(at + 1)..].IndexOf('@') >= 0 || !IsHostName(e[(at + 1)..])) return EntryKind.Bad;
            foreach (var c in local)
                if (c <= ' ' || c is '<' or '>' or '(' or ')' or ',' or ';' or '"' or '\\') return EntryKind.Bad;
            return EntryKind.Mail;
        }
        if (LooksNumeric(e))
            return CidrSet.TryParsePrefix(e.ToString(), out _, out _) ? EntryKind.Address : EntryKind.Bad;
        if (e.StartsWith("*.")) e = e[2..];
        else if (e.StartsWith(".")) e = e[1..];
        return IsHostName(e) ? EntryKind.Name : EntryKind.Bad;
    }

    /// <summary>Digits, dots, colons and a slash only (or an IPv6 literal): meant as an address, so it must parse as one.</summary>
    static bool LooksNumeric(ReadOnlySpan<char> e)
    {
        if (e.Contains(':') || e.Contains('/')) return true;
        foreach (var c in e)
            if (!(char.IsAsciiDigit(c) || c == '.')) return false;
        return true;
    }
}
