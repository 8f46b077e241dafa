namespace Bastion.Protocols.Http.Engine;

/// <summary>
/// The access log's request text ("GET https://name/path"), made again only when the method or the URL changes: a
/// keep-alive client asking for the same resource again costs no new string. <c>prefix</c> goes before a URL that
/// lacks its scheme and host (an origin-form target on the reverse proxy); it is fixed per connection.
/// </summary>
public sealed class RequestText
{
    string? _method, _url, _text;

    public string Get(string method, string url, string? prefix = null)
    {
        if (_text is not null && method == _method && url == _url) return _text;
        (_method, _url) = (method, url);
        return _text = prefix is null ? $"{method} {url}" : $"{method} {prefix}{url}";
    }
}
