namespace Bastion.Policy;

/// <summary>Header field values as RFC 9110 reads them: only SP and HTAB are whitespace (never culture-aware trimming on wire data).</summary>
public static class HeaderValue
{
    public static ReadOnlySpan<char> TrimOws(ReadOnlySpan<char> s)
    {
        int a = 0, b = s.Length;
        while (a < b && s[a] is ' ' or '\t') a++;
        while (b > a && s[b - 1] is ' ' or '\t') b--;
        return s[a..b];
    }
}
