using Bastion.Policy;

namespace Bastion.Protocols.HttpProxy;

/// <summary>A parsed request line and header block. Header names keep their case; lookups ignore it.</summary>
public sealed class RequestHead : IHeaderSource
{
    public string Method { get; set; } = "";
    public string Target { get; set; } = "";
    /// <summary>1 for HTTP/1.1, 0 for HTTP/1.0.</summary>
    public int MinorVersion { get; set; } = 1;
    public List<KeyValuePair<string, string>> Headers { get; } = new(24);
    /// <summary>Length of the head in bytes, request line to the blank line.</summary>
    public int HeadLength { get; set; }

    public void Clear()
    {
        Method = Target = "";
        MinorVersion = 1;
        Headers.Clear();
        HeadLength = 0;
    }

    public string? Get(string name)
    {
        string? found = null;
        foreach (var (k, v) in Headers)
        {
            if (!k.Equals(name, StringComparison.OrdinalIgnoreCase)) continue;
            found = found is null ? v : $"{found}, {v}";
        }
        return found;
    }

    public bool TryGetLine(string name, int index, out string value)
    {
        foreach (var (k, v) in Headers)
        {
            if (!k.Equals(name, StringComparison.OrdinalIgnoreCase) || index-- > 0) continue;
            value = v;
            return true;
        }
        value = "";
        return false;
    }

    public int Count(string name)
    {
        int n = 0;
        foreach (var (k, _) in Headers)
            if (k.Equals(name, StringComparison.OrdinalIgnoreCase)) n++;
        return n;
    }

    /// <summary>True when a comma-separated header (Connection, Expect) holds the token.</summary>
    public bool HasToken(string name, string token)
    {
        foreach (var (k, v) in Headers)
        {
            if (!k.Equals(name, StringComparison.OrdinalIgnoreCase)) continue;
            foreach (var range in v.AsSpan().Split(','))
                if (v.AsSpan()[range].Trim().Equals(token, StringComparison.OrdinalIgnoreCase)) return true;
        }
        return false;
    }
}
