namespace Bastion.Protocols.Http.Inspection;

/// <summary>
/// The access log's request text inside a tunnel ("GET https://name/path"), made again only when the method or the
/// URL changes: a keep-alive client asking for the same resource again costs no new string.
/// </summary>
sealed class RequestText
{
    string? _method, _url, _text;

    public string Get(string method, string url)
    {
        if (_text is not null && method == _method && url == _url) return _text;
        (_method, _url) = (method, url);
        return _text = $"{method} {url}";
    }
}
