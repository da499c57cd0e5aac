<?php
// Answered by php-fpm behind nginx: which server ran it, and that the request came through FastCGI.
header('Content-Type: text/plain');
printf("hello from %s via %s\n", php_sapi_name(), $_SERVER['GATEWAY_INTERFACE'] ?? 'nothing');
printf("method %s, query %s\n", $_SERVER['REQUEST_METHOD'], $_SERVER['QUERY_STRING'] ?? '');
